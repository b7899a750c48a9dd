from smprof.cli import main

main()
