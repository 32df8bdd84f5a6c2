// Pieces shared by the run, benchmark and test harness mains.
#ifndef RULES_PURE_MODEL_TOOLS_HARNESS_HARNESS_UTIL_H_
#define RULES_PURE_MODEL_TOOLS_HARNESS_HARNESS_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tools/harness/model_descriptor.h"
#include "tools/harness/npy.h"

namespace pure_model_harness {

// ---- Command line --------------------------------------------------------------------------

// The base name of argv[0], for prefixing messages.
std::string ProgramName(const char* argv0);

// Prints "<program>: <message>" to stderr and returns the exit status for errors, so that mains
// can `return Fail(...)`.
int Fail(const std::string& program, const std::string& message);

// Parses --name=value, --name value and --switch. Nothing positional is accepted: none of the
// harness programs takes positional arguments, so one is almost certainly a mistake.
class FlagParser {
 public:
  // Unless noted, a flag given twice takes the last value, so that arguments appended on the
  // command line override ones baked into a target's `args`.
  void AddString(const std::string& name, std::string* value);
  // Every occurrence is appended.
  void AddRepeated(const std::string& name, std::vector<std::string>* values);
  void AddInt(const std::string& name, std::int64_t min_value, std::int64_t* value);
  // Accepts finite values >= min_value.
  void AddDouble(const std::string& name, double min_value, double* value);
  // Takes no value. "-h" is accepted as an alias for a switch named "help".
  void AddSwitch(const std::string& name, bool* value);

  bool Parse(int argc, char** argv, std::string* error) const;

 private:
  struct Flag {
    std::string name;
    bool takes_value;
    std::function<bool(const std::string& value, std::string* error)> set;
  };
  const Flag* Find(const std::string& name) const;

  std::vector<Flag> flags_;
};

// The flags of the programs that time repeated runs (_benchmark, _profile): --runs (>= 1),
// --warmup, --seed and --help. The defaults stay with the caller's variables.
bool ParseTimingFlags(int argc, char** argv, std::int64_t* runs, std::int64_t* warmup, std::int64_t* seed,
                      bool* help, std::string* error);

// ---- Paths ---------------------------------------------------------------------------------

// `path` if it is absolute or `base` is empty, else `base`/`path`.
std::string ResolvePath(const std::string& base, const std::string& path);

// The directory relative paths on the command line of `bazel run` targets should be taken from:
// $BUILD_WORKING_DIRECTORY, which `bazel run` sets to where it was invoked (the program itself
// runs in its runfiles tree), or "" (meaning the current directory) when that is unset.
std::string UserWorkingDirectory();

// Creates `path` and any missing parents, like mkdir -p.
bool MakeDirectories(const std::string& path, std::string* error);

// The file name (without directory) a tensor is stored under: its name with every character
// outside [A-Za-z0-9_.-] replaced by '_', plus ".npy". ONNX names are free-form and often hold
// '/' or ':', which must not leak into paths.
std::string TensorFileName(const char* tensor_name);

// Fails if two of `tensors` map to the same TensorFileName, which would make one overwrite or
// shadow the other. `role` is "input" or "output", for the message.
bool CheckDistinctFileNames(const TensorInfo* tensors, int count, const char* role,
                            std::string* error);

// ---- Tensors -------------------------------------------------------------------------------

// "float32[1,3,224,224]"; a scalar is "float32[]".
std::string FormatType(DType dtype, const std::int64_t* dims, int rank);
std::string FormatType(const TensorInfo& info);

// A multi-line listing of the model's inputs and outputs, for --help and error messages.
std::string DescribeModel(const ModelDescriptor& model);

// Checks that the descriptor agrees with itself (element and byte counts match the dims, no
// unknown dtypes, no missing functions), so that a generator bug shows up as a clear message
// instead of a buffer overrun.
bool ValidateModel(const ModelDescriptor& model, std::string* error);

// Reads `path` and checks that it holds exactly the dtype and shape of `info`. `what` names the
// tensor in messages, e.g. "input 'x'"; `shown_path` is the path as the user wrote it.
bool LoadTensor(const std::string& what, const TensorInfo& info, const std::string& path,
                const std::string& shown_path, NpyArray* out, std::string* error);

// ---- Random inputs -------------------------------------------------------------------------

// Fills `data` (info.bytes of space) with pseudo-random values determined by `seed`, the same on
// every platform. Floats are uniform in [-1, 1); integers are in [0, 4), valid indices for any
// gather-like op on a non-trivial axis; bools are 0 or 1.
void FillRandom(const TensorInfo& info, std::uint64_t seed, unsigned char* data);

// The seed of input `index`'s stream, derived from the run's `seed`: each input has its own
// stream, so that adding an input leaves the others' data as it was. tools/bench's ONNX Runtime
// harness uses it too, so that both runtimes see the same inputs.
std::uint64_t InputSeed(std::uint64_t seed, int index);

// One buffer of random data per input of the model (each input its own stream derived from
// `seed`), and pointers to them in the model's order, ready for ModelDescriptor::run.
void MakeRandomInputs(const ModelDescriptor& model, std::uint64_t seed,
                      std::vector<std::vector<unsigned char>>* data,
                      std::vector<const void*>* pointers);

// One buffer per output of the model, and pointers to them.
void MakeOutputBuffers(const ModelDescriptor& model, std::vector<std::vector<unsigned char>>* data,
                       std::vector<void*>* pointers);

// ---- Output --------------------------------------------------------------------------------

// `text` as a JSON string literal, quotes included.
std::string JsonString(const std::string& text);

// ---- Measurements --------------------------------------------------------------------------

struct TimingSummary {
  double min_ms, max_ms, mean_ms, median_ms, p90_ms;
};

// Median: the middle value (the mean of the middle two); p90: nearest rank, the smallest time
// that at least 90% of runs do not exceed. `times_ms` must not be empty.
TimingSummary Summarize(std::vector<double> times_ms);

// The process's peak resident set size in kB (VmHWM), or -1 if unknown. Not getrusage():
// ru_maxrss is inherited across execve, so under `bazel run` it would report the Bazel client's
// peak whenever that exceeds ours.
long long PeakRssKb();

// ---- Model instances -----------------------------------------------------------------------

// Owns one instance of the model, destroying it when it goes out of scope.
class ModelInstance {
 public:
  explicit ModelInstance(const ModelDescriptor& model);
  ~ModelInstance();
  ModelInstance(const ModelInstance&) = delete;
  ModelInstance& operator=(const ModelInstance&) = delete;

  // Whether create() succeeded.
  bool ok() const { return ok_; }
  void Run(const void* const* inputs, void* const* outputs) const {
    model_.run(instance_, inputs, outputs);
  }
  // The descriptor's step_times for this instance (only when model.num_steps > 0).
  void StepTimes(double* ns_out) const { model_.step_times(instance_, ns_out); }

 private:
  const ModelDescriptor& model_;
  void* instance_;
  bool ok_;
};

}  // namespace pure_model_harness

#endif  // RULES_PURE_MODEL_TOOLS_HARNESS_HARNESS_UTIL_H_
