// What a process start costs under the library, part by part.
//
// Usage: start_bench N PROGRAM [ARG] -- VARIANT...
//   each VARIANT is NAME=ENV[,ENV...] (ENV as KEY=VALUE; "bare" for none;
//   "{PID}" in a value stands for start_bench's own pid).
// Starts PROGRAM N times under every variant, the variants interleaved
// round by round (so that noise falls on all of them alike), and prints one
// JSON object: for each variant the median and the 10th and 90th percentile
// of the time from posix_spawn to the end of waitpid, in microseconds.
// run_bench.py gives it variants that add one part of the library's start
// at a time; the differences between medians are the parts' costs.
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double NowUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

struct Variant {
  std::string name;
  std::vector<std::string> env;
  std::vector<double> us;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: start_bench N PROGRAM [ARG] -- NAME=ENV,...\n");
    return 2;
  }
  int n = atoi(argv[1]);
  std::vector<char*> args;
  int i = 2;
  for (; i < argc && strcmp(argv[i], "--") != 0; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  std::vector<Variant> variants;
  for (++i; i < argc; ++i) {
    Variant v;
    std::string spec = argv[i];
    size_t eq = spec.find('=');
    v.name = spec.substr(0, eq);
    std::string rest = eq == std::string::npos ? "" : spec.substr(eq + 1);
    for (size_t pos = 0; !rest.empty() && pos != std::string::npos;) {
      size_t comma = rest.find(',', pos);
      v.env.push_back(rest.substr(pos, comma == std::string::npos
                                           ? std::string::npos
                                           : comma - pos));
      pos = comma == std::string::npos ? comma : comma + 1;
    }
    for (std::string& e : v.env) {
      size_t at = e.find("{PID}");
      if (at != std::string::npos) e.replace(at, 5, std::to_string(getpid()));
    }
    variants.push_back(v);
  }
  if (n <= 0 || args.size() < 2 || variants.empty()) {
    fprintf(stderr, "start_bench: nothing to run\n");
    return 2;
  }
  std::string path = std::string("PATH=") + (getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
  for (int round = 0; round < n; ++round) {
    for (Variant& v : variants) {
      std::vector<char*> envp;
      envp.push_back(path.data());
      for (std::string& e : v.env) {
        if (e != "bare") envp.push_back(e.data());
      }

      envp.push_back(nullptr);
      double start = NowUs();
      pid_t pid;
      if (posix_spawn(&pid, args[0], nullptr, nullptr, args.data(),
                      envp.data()) != 0) {
        perror("start_bench: posix_spawn");
        return 1;
      }
      int status;
      while (waitpid(pid, &status, 0) < 0) {
      }
      v.us.push_back(NowUs() - start);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "start_bench: %s exited %d under %s\n", args[0],
                status, v.name.c_str());
        return 1;
      }
    }
  }
  printf("{");
  for (size_t k = 0; k < variants.size(); ++k) {
    std::vector<double>& us = variants[k].us;
    std::sort(us.begin(), us.end());
    printf("%s\"%s\": {\"median_us\": %.1f, \"p10_us\": %.1f, \"p90_us\": %.1f}",
           k ? ", " : "", variants[k].name.c_str(), us[us.size() / 2],
           us[us.size() / 10], us[us.size() * 9 / 10]);
  }
  printf("}\n");
  return 0;
}
