"""Training: fitting a registry model on a converted FER2013 folder, hyperparameter search, model soups."""
