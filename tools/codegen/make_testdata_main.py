"""Entry point of the //tools/codegen:make_testdata binary."""

from absl import app

from pure_model_codegen import make_testdata

if __name__ == "__main__":
    app.run(make_testdata.main)
