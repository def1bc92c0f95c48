// Executes one parsed conformance script against a fresh netstack on a fake link with a
// virtual clock; the runner plays the remote peer (see README.md here).
#ifndef NS_CONF_RUNNER_H
#define NS_CONF_RUNNER_H

#include <string>

#include "script.h"

namespace conf {

// Runs the script; returns true when every line matched, nothing unexpected was sent and no
// buffer leaked. *log gets the failure (script:line, expected vs actual) or nothing;
// with verbose, a trace of every event as it happened.
bool run_script(const Script &sc, const std::string &path, bool verbose, std::string *log);

}  // namespace conf

#endif
