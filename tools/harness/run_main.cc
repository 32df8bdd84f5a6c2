// <model>_run: runs the model once on inputs read from .npy files and writes each output to
// <output_dir>/<output name>.npy.
#include <cstdio>
#include <string>
#include <vector>

#include "tools/harness/harness_util.h"
#include "tools/harness/model_descriptor.h"
#include "tools/harness/npy.h"

namespace pure_model_harness {
namespace {

std::string Usage(const std::string& program, const ModelDescriptor& model) {
  return "Usage: " + program +
         " --input=<input name>=<file.npy> ... --output_dir=<dir>\n"
         "\n"
         "Runs the model once. Every input must be given exactly once, as a .npy file of exactly\n"
         "its dtype and shape. Each output is written to <dir>/<output name>.npy, with characters\n"
         "outside [A-Za-z0-9_.-] in the name replaced by '_'; <dir> is created if missing.\n"
         "Relative paths are taken from $BUILD_WORKING_DIRECTORY when set (as under `bazel run`),\n"
         "else from the current directory.\n"
         "\n" +
         DescribeModel(model);
}

// Finds the input an --input value names and returns its index, or -1. Input names may contain
// '=' themselves, so the value is matched against the model's names instead of being split at
// the first '='; of several matching names the longest wins.
int FindInput(const ModelDescriptor& model, const std::string& spec, std::string* path) {
  int found = -1;
  std::size_t found_length = 0;
  for (int i = 0; i < model.num_inputs; ++i) {
    const std::string name = model.inputs[i].name;
    if (spec.size() > name.size() && spec.compare(0, name.size(), name) == 0 &&
        spec[name.size()] == '=' && (found < 0 || name.size() > found_length)) {
      found = i;
      found_length = name.size();
    }
  }
  if (found >= 0) *path = spec.substr(found_length + 1);
  return found;
}

int RunMain(int argc, char** argv) {
  const std::string program = ProgramName(argv[0]);
  const ModelDescriptor& model = Model();
  std::string error;
  if (!ValidateModel(model, &error)) return Fail(program, error);

  std::vector<std::string> input_specs;
  std::string output_dir;
  bool help = false;
  FlagParser flags;
  flags.AddRepeated("input", &input_specs);
  flags.AddString("output_dir", &output_dir);
  flags.AddSwitch("help", &help);
  if (!flags.Parse(argc, argv, &error)) return Fail(program, error);
  if (help) {
    std::fputs(Usage(program, model).c_str(), stdout);
    return 0;
  }

  // Collect every problem with the command line before reporting, so that one attempt shows
  // them all.
  std::vector<std::string> input_paths(model.num_inputs);
  std::vector<bool> given(model.num_inputs, false);
  std::vector<std::string> problems;
  for (const std::string& spec : input_specs) {
    std::string path;
    const int index = FindInput(model, spec, &path);
    if (index < 0) {
      const std::size_t equals = spec.find('=');
      problems.push_back(equals == std::string::npos
                             ? "--input=" + spec + ": expected --input=<input name>=<file.npy>"
                             : "unknown input '" + spec.substr(0, equals) + "' in --input=" + spec);
    } else if (given[index]) {
      problems.push_back("input '" + std::string(model.inputs[index].name) +
                         "' is given more than once");
    } else {
      given[index] = true;
      input_paths[index] = path;
      if (path.empty()) {
        problems.push_back("no file for input '" + std::string(model.inputs[index].name) + "'");
      }
    }
  }
  for (int i = 0; i < model.num_inputs; ++i) {
    if (!given[i]) {
      problems.push_back("missing --input for input '" + std::string(model.inputs[i].name) + "'");
    }
  }
  if (!problems.empty()) {
    for (const std::string& problem : problems) Fail(program, problem);
    std::fputs(DescribeModel(model).c_str(), stderr);
    return 1;
  }
  if (output_dir.empty()) return Fail(program, "missing --output_dir (see --help)");
  if (!CheckDistinctFileNames(model.outputs, model.num_outputs, "output", &error)) {
    return Fail(program, error);
  }

  const std::string base = UserWorkingDirectory();
  std::vector<NpyArray> arrays(model.num_inputs);
  std::vector<const void*> inputs(model.num_inputs);
  bool loaded = true;
  for (int i = 0; i < model.num_inputs; ++i) {
    const TensorInfo& info = model.inputs[i];
    if (!LoadTensor("input '" + std::string(info.name) + "'", info,
                    ResolvePath(base, input_paths[i]), input_paths[i], &arrays[i], &error)) {
      Fail(program, error);
      loaded = false;
    }
    inputs[i] = arrays[i].data.data();
  }
  if (!loaded) return 1;

  const std::string dir = ResolvePath(base, output_dir);
  if (!MakeDirectories(dir, &error)) return Fail(program, error);

  std::vector<std::vector<unsigned char>> output_data(model.num_outputs);
  std::vector<void*> outputs(model.num_outputs);
  for (int i = 0; i < model.num_outputs; ++i) {
    output_data[i].resize(model.outputs[i].bytes);
    outputs[i] = output_data[i].data();
  }
  {
    ModelInstance instance(model);
    if (!instance.ok()) return Fail(program, "could not create a model instance");
    instance.Run(inputs.data(), outputs.data());
  }

  for (int i = 0; i < model.num_outputs; ++i) {
    const TensorInfo& info = model.outputs[i];
    const std::string path = ResolvePath(dir, TensorFileName(info.name));
    if (!WriteNpy(path, info.dtype, info.dims, info.rank, outputs[i], info.bytes, &error)) {
      return Fail(program, error);
    }
    std::printf("wrote output '%s' (%s) to %s\n", info.name, FormatType(info).c_str(),
                path.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace pure_model_harness

int main(int argc, char** argv) { return pure_model_harness::RunMain(argc, argv); }
