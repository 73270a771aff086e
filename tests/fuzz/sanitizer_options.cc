// Linked into every fuzz target: makes UndefinedBehaviorSanitizer reports
// fatal, so that libFuzzer counts them as crashes and saves the input. (The
// collector library is built with recoverable UBSan checks; without
// halt_on_error a report would scroll by and the run would carry on.)
// UBSAN_OPTIONS in the environment still overrides this.

extern "C" const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1";
}
