/* Input for collector/symbolizer_test.cc, built as a shared object with
 * -g -O1. The test calls the functions below and resolves the return address
 * that target_callee records, so it sees exactly what the shim would report.
 * Expected lines are the LINE: markers, not numbers: edit freely. */

volatile int target_sink;
void* volatile target_last_return;

/* Records its own return address, i.e. a point right after a call. */
__attribute__((noinline)) void target_callee(int x) {
  target_last_return = __builtin_return_address(0);
  target_sink = x;
}

void target_leaf(int x) {
  target_callee(x + 1); /* LINE:leaf_call */
  target_sink += 2;     /* Keeps the call above from becoming a tail call. */
}

static inline __attribute__((always_inline)) void target_inlined(int x) {
  target_callee(x * 3); /* LINE:inline_call */
}

void target_outer(int x) {
  target_inlined(x); /* LINE:outer_call */
  target_sink += 5;
}

int main(void) {
  target_leaf(1);
  target_outer(2);
  return 0;
}
