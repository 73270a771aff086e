/* A preloaded library that does nothing: what any LD_PRELOAD costs a
 * process start, for start_bench's first step. */
int closeaudit_bench_empty_preload;
