"""The training-side collectors: what runs inside the user's training job.

Why a package of its own: it is installed into SageMaker's framework containers beside the
user's code, so it imports only the standard library, psutil and (when present) NVML and
torch — never pandas, pyarrow, plotly or streamlit — and a failure in it never fails or
slows the training (one line on stderr, the training goes on).
"""
