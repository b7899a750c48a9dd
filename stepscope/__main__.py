from stepscope.cli import main

if __name__ == "__main__":  # worker processes import this module again as __mp_main__
    main()
