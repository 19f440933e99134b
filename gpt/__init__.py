"""hw5: build, train and sample a GPT language model from scratch."""
