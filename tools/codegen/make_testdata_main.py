"""Entry point of the //tools/codegen:make_testdata binary."""

from pure_model_codegen import hermetic

hermetic.drop_system_site_packages()

from absl import app  # noqa: E402  (after the path fix)

from pure_model_codegen import make_testdata  # noqa: E402

if __name__ == "__main__":
    app.run(make_testdata.main)
