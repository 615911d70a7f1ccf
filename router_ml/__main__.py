from router_ml.cli import cli

cli()
