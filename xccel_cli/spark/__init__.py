"""--engine spark: the PySpark job (job.py) and its driver (engine.py). Needs the spark extra and Java."""
