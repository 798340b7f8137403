from setuptools import find_packages, setup

# One matching Dagster set: core 1.13.27 <-> libraries 0.29.27 (dagster-notes §7.1).
# Transitive pins live in requirements.lock, applied as constraints by the Makefile.
setup(
    name="sizeagg_pipeline",
    version="0.1.0",
    description="Database-size aggregates and sync sessions on Dagster",
    packages=find_packages(exclude=["sizeagg_pipeline_tests", "benchmarks"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-graphql==1.13.27",
        "dagster-pipes==1.13.27",
        "dagster-shared==1.13.27",
        "dagster-postgres==0.29.27",
        "SQLAlchemy==2.1.9",
        "psycopg2-binary==2.9.13",
        "pandas==3.1.1",
        "numpy==2.4.6",
        "tabulate==0.10.0",
        "matplotlib==3.11.2",
    ],
    extras_require={
        "dev": ["pytest==9.2.0", "pytest-timeout==2.4.0", "ruff==0.17.5"],
    },
    entry_points={"console_scripts": ["sizeagg=sizeagg_pipeline.cli:main"]},
)
