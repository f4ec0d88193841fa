"""One router per resource: inference, models, oip (Open Inference Protocol), health, metrics."""
