// Merging the reports of several hosts or runs: `closeaudit merge`.
#ifndef CLOSEAUDIT_COLLECTOR_MERGE_H_
#define CLOSEAUDIT_COLLECTOR_MERGE_H_

#include <string>
#include <vector>

#include "collector/report.h"

namespace closeaudit {

struct HostReport {
  std::string host;  // distinct per input: examples are tagged with it
  Report report;
};

// One report: culprits with the same kind and symbolized stacks merged,
// their examples tagged by host; summaries added up; warnings, processes
// and kernel observations kept, by host; audited if any run was. Timelines
// are per run and are left out.
Report MergeReports(std::vector<HostReport> inputs);

}  // namespace closeaudit

#endif  // CLOSEAUDIT_COLLECTOR_MERGE_H_
