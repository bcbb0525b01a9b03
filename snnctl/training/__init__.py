"""Training: the loop, checkpoints that resume exactly, learning-rate schedules."""
