"""Entry point of the //tools/codegen binary."""

from pure_model_codegen import hermetic

hermetic.drop_system_site_packages()

from pure_model_codegen import cli  # noqa: E402  (after the path fix)

if __name__ == "__main__":
    cli.run()
