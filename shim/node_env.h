// The literal form's Node.js set-up: `LD_PRELOAD=libcloseaudit.so node
// app.js` has nobody to add the agent and V8's perf-map flags to
// NODE_OPTIONS, as `closeaudit run` does. The library does it itself when
// the image is Node.js's binary, before Node.js's main reads the variable,
// unless CLOSEAUDIT_NODE=off or the options load the agent already
// (common/node_options.h).
#ifndef CLOSEAUDIT_SHIM_NODE_ENV_H_
#define CLOSEAUDIT_SHIM_NODE_ENV_H_

namespace closeaudit::shim {

// Called once, from the library's constructor.
void PrepareNode();

}  // namespace closeaudit::shim

#endif  // CLOSEAUDIT_SHIM_NODE_ENV_H_
