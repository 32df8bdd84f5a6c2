"""Public API of rules_pure_model. Re-exports only: the implementation lives in private/ and
may move without breaking anyone who loads this file."""

load("//rules/private:codegen.bzl", _PureModelInfo = "PureModelInfo")
load("//rules/private:pure_model_library.bzl", _pure_model_library = "pure_model_library")

pure_model_library = _pure_model_library
PureModelInfo = _PureModelInfo
