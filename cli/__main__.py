"""`python -m cli` is `kaq`; and a file spark-submit can run: `spark-submit …/cli/__main__.py
spark-evaluate IN OUT` (docs/spark.md)."""

from cli import main

if __name__ == "__main__":
    main()
