# Overrides, nanoGPT style: executed by train.py with exec(), writing into its globals.
batch_size = 8
learning_rate = 3e-2
max_iters = 24
