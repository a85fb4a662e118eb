"""Fine-tuning tasks: loading GLUE, SQuAD and user datasets into one schema per task type."""
