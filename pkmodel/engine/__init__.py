"""Training, evaluation and prediction: the loops that run the model over data."""
