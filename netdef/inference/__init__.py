"""Running a trained net where it is used: export, test-time crops, ensembles."""
