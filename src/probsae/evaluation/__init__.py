"""Evaluation of SAEs: reconstruction metrics (``metrics``) and downstream CE/KL (``downstream``)."""
