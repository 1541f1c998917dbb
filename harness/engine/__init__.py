"""The one training loop every method uses, with its hooks, batch formats, learning-rate
schedules and run lengths at the chosen scale."""
