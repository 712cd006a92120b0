"""Plugin tests: real plugin packages, installed with pip, discovered through their entry points."""
