"""Pulumi program entry point. The resources are declared in ml_model_stack."""

import ml_model_stack

ml_model_stack.main()
