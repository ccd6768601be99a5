"""One module per command: preprocess, train, evaluate, predict_map, assess, sample; runs and ranks orchestrate them."""
