from pure_model_codegen import cli

cli.run()
