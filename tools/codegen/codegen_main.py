"""Entry point of the //tools/codegen binary."""

from pure_model_codegen import cli

if __name__ == "__main__":
    cli.run()
