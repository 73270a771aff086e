// The HTML report: one self-contained page (inline CSS, a little inline
// script, inline SVG; no fetches, no fonts) for a person after an incident.
//
// Layout, top to bottom: a summary bar; the culprit table (sortable, each row
// opens to its stacks, with source lines where the file is readable, and its
// example connections); one timeline per process (open sockets and CLOSE_WAIT
// sockets over the run, with a marker where each finding began); and the
// explanation of every kind in the report, from docs/findings/.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "collector/app_frames.h"
#include "collector/finding_docs.h"
#include "collector/report.h"

namespace closeaudit {
namespace {

std::string Esc(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string Ms(int64_t ms) {
  if (ms < 1000) return absl::StrCat(ms, " ms");
  if (ms < 120000) return absl::StrFormat("%.1f s", ms / 1000.0);
  return absl::StrFormat("%.1f min", ms / 60000.0);
}

// Source lines of the files frames name, read once each. Files that are
// missing, unreadable, not regular or very large are skipped.
class SourceLines {
 public:
  const std::string* Line(const std::string& path, int line) {
    if (path.empty() || line <= 0) return nullptr;
    auto [it, inserted] = files_.try_emplace(path);
    if (inserted) Load(path, &it->second);
    if (static_cast<size_t>(line) > it->second.size()) return nullptr;
    return &it->second[line - 1];
  }

 private:
  static void Load(const std::string& path, std::vector<std::string>* lines) {
    // Debug information names source files; never what only looks like one.
    for (const char* pseudo : {"/proc/", "/sys/", "/dev/"}) {
      if (path.rfind(pseudo, 0) == 0) return;
    }
    struct stat st;
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size > (8 << 20)) {
      return;
    }
    std::ifstream in(path);
    std::string text;
    while (std::getline(in, text)) lines->push_back(text);
  }

  std::map<std::string, std::vector<std::string>> files_;
};

// Where a finding points: the handler an event library passed the EOF to,
// else the program's own innermost frame of its first stack that has one,
// else the first frame of its first stack that is not libc's start-up code.
std::string Where(const Finding& f) {
  for (const auto& [name, frames] : f.stacks) {
    if (name == "handler" && !frames.empty()) return FrameText(frames.front());
  }
  for (const auto& [name, frames] : f.stacks) {
    for (const Frame& frame : frames) {
      if (frame.in_app) return FrameText(frame);
    }
  }
  for (const auto& [name, frames] : f.stacks) {
    for (const Frame& frame : frames) {
      if (!IsStartupFrame(frame)) return FrameText(frame);
    }
  }
  return "";
}

void AppendStack(std::string* out, const std::string& name,
                 const std::vector<Frame>& frames, SourceLines* sources) {
  absl::StrAppend(out, "<div class=stack><div class=stackname>", Esc(name),
                  "</div>");
  if (frames.empty()) {
    absl::StrAppend(out, "<div class=none>not recorded</div></div>");
    return;
  }
  absl::StrAppend(out, "<table class=frames>");
  int n = 0;
  for (const Frame& fr : frames) {
    if (IsStartupFrame(fr)) continue;
    // C++ names without parameters and template arguments (the JSON has
    // them); the library's frames dimmed, the program's own plain.
    std::string fn = fr.function.empty() ? FrameName(fr) : ShortFunction(fr.function);
    std::string loc;
    if (!fr.file.empty()) {
      loc = absl::StrCat(SourceName(fr), ":", fr.line);
    } else if (!fr.module.empty()) {
      loc = fr.module.substr(fr.module.rfind('/') + 1);
    }
    const std::string* src = sources->Line(fr.file, fr.line);
    absl::StrAppend(
        out, fr.in_app ? "<tr>" : "<tr class=lib>", "<td class=n>", n++,
        "</td><td class=fn title=\"", Esc(fr.function), "\">", Esc(fn),
        fr.inlined ? " <span class=tag>inlined</span>" : "",
        "</td><td class=loc title=\"", Esc(fr.file), "\">", Esc(loc),
        "</td><td class=src>",
        src ? absl::StrCat("<code>", Esc(*src), "</code>") : "", "</td></tr>");
  }
  absl::StrAppend(out, "</table></div>");
}

void AppendExamples(std::string* out, const Finding& f) {
  if (f.examples.empty()) return;
  bool hosts = std::any_of(f.examples.begin(), f.examples.end(),
                           [](const Example& e) { return !e.host.empty(); });
  absl::StrAppend(out, "<h4>Example connections</h4><table class=examples><tr>",
                  hosts ? "<th>host</th>" : "",
                  "<th>pid</th><th>fd</th><th>local</th><th>peer</th>"
                  "<th>age</th><th>kernel state</th><th>notes</th></tr>");
  for (const Example& e : f.examples) {
    std::vector<std::string> notes;
    if (!e.exe.empty()) notes.push_back(Esc(e.exe));
    if (e.closed_after_ms) {
      notes.push_back(absl::StrCat("closed ", Ms(*e.closed_after_ms),
                                   " after the EOF"));
    } else if (e.eof_to_end_ms) {
      notes.push_back(absl::StrCat("never closed, ", Ms(*e.eof_to_end_ms),
                                   " after the EOF"));
    }
    if (e.unsent_bytes) {
      notes.push_back(absl::StrCat(*e.unsent_bytes, " bytes unsent"));
    }
    absl::StrAppend(out, "<tr>",
                    hosts ? absl::StrCat("<td>", Esc(e.host), "</td>") : "",
                    "<td>", e.pid, "</td><td>", e.fd, "</td><td>",
                    Esc(e.local.empty() ? "?" : e.local), "</td><td>",
                    Esc(e.peer.empty() ? "?" : e.peer), "</td><td>",
                    Ms(e.age_ms), "</td><td>",
                    e.tcp_state ? Esc(*e.tcp_state) : "", "</td><td>",
                    absl::StrJoin(notes, "; "), "</td></tr>");
  }
  absl::StrAppend(out, "</table>");
}

void AppendDetail(std::string* out, const Finding& f, SourceLines* sources) {
  absl::StrAppend(out, "<p class=message>", Esc(f.message), "</p>");
  if (!f.reason.empty()) {
    absl::StrAppend(out, "<p><b>Reason:</b> <code>", Esc(f.reason),
                    "</code></p>");
  }
  if (!f.holders.empty()) {
    absl::StrAppend(out, "<p><b>Still held by:</b> ");
    std::vector<std::string> hs;
    for (const Holder& h : f.holders) {
      hs.push_back(absl::StrCat("pid ", h.pid, " fd ", h.fd, " (", Esc(h.exe),
                                ")"));
    }
    absl::StrAppend(out, absl::StrJoin(hs, ", "), "</p>");
  }
  if (!f.peers.empty()) {
    std::vector<std::string> ps;
    for (const PeerCount& p : f.peers) {
      ps.push_back(absl::StrCat(Esc(p.peer), " &times;", p.count));
    }
    absl::StrAppend(out, "<p><b>Peers:</b> ", absl::StrJoin(ps, ", "), "</p>");
  }
  absl::StrAppend(out, "<div class=stacks>");
  for (const auto& [name, frames] : f.stacks) {
    AppendStack(out, name, frames, sources);
  }
  absl::StrAppend(out, "</div>");
  AppendExamples(out, f);
  absl::StrAppend(out, "<p class=fix><b>Fix:</b> ", Esc(f.advice),
                  " <a href=\"#doc-", Esc(f.kind), "\">About ", Esc(f.kind),
                  "</a></p>");
}

// What the kernel showed of an unaudited program's sockets: a kernel
// observation, with no stacks and no advice.
void AppendObservations(std::string* out, const Report& r) {
  if (r.kernel_observations.empty()) return;
  bool hosts = std::any_of(
      r.kernel_observations.begin(), r.kernel_observations.end(),
      [](const KernelObservation& o) { return !o.host.empty(); });
  absl::StrAppend(
      out,
      "<section id=kernel><h2>What the kernel showed</h2><p>None of the "
      "program's calls were seen, so there are no stacks: these are the "
      "sockets the kernel showed in one state for longer than the grace "
      "period (",
      Ms(static_cast<int64_t>(r.grace_ms)),
      ").</p><table class=examples><tr>", hosts ? "<th>host</th>" : "",
      "<th>pid</th><th>exe</th><th>state</th><th>sockets</th>"
      "<th>longest</th><th>for example</th></tr>");
  for (const KernelObservation& o : r.kernel_observations) {
    std::vector<std::string> sockets;
    for (const ObservedSocket& s : o.sockets) {
      sockets.push_back(absl::StrCat(
          "fd ", s.fd, " ", Esc(s.local.empty() ? "?" : s.local), " &lt;- ",
          Esc(s.peer.empty() ? "?" : s.peer), " (", Ms(s.seen_ms), ")"));
    }
    absl::StrAppend(out, "<tr>",
                    hosts ? absl::StrCat("<td>", Esc(o.host), "</td>") : "",
                    "<td>", o.pid, "</td><td>", Esc(o.exe), "</td><td>",
                    Esc(o.tcp_state), "</td><td>", o.count, "</td><td>",
                    Ms(o.longest_ms), "</td><td>",
                    absl::StrJoin(sockets, "<br>"), "</td></tr>");
  }
  absl::StrAppend(out, "</table></section>");
}

// A round step for an axis that reaches `max`: 1, 2 or 5 times a power of 10.
double NiceStep(double max, int ticks) {
  double raw = max / ticks;
  if (raw <= 0) return 1;
  double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * p >= raw) return m * p;
  }
  return 10 * p;
}

constexpr int kPlotW = 880, kPlotH = 190;
constexpr int kLeft = 48, kRight = 16, kTop = 14, kBottom = 30;

// A step function through the points, as an SVG path.
std::string StepPath(const std::vector<TimelinePoint>& points,
                     int64_t TimelinePoint::*value, double x0, double xs,
                     double y0, double ys, int64_t end_ms) {
  std::string d;
  for (size_t i = 0; i < points.size(); ++i) {
    double x = x0 + points[i].t_ms * xs;
    double y = y0 - points[i].*value * ys;
    if (i == 0) {
      absl::StrAppendFormat(&d, "M%.1f %.1f", x, y);
    } else {
      absl::StrAppendFormat(&d, "H%.1fV%.1f", x, y);
    }
  }
  if (!points.empty()) absl::StrAppendFormat(&d, "H%.1f", x0 + end_ms * xs);
  return d;
}

void AppendTimeline(std::string* out, const ProcessTimeline& t,
                    int64_t run_ms, const std::vector<Finding>& findings) {
  int64_t span = std::max<int64_t>({run_ms, t.end_ms, 1});
  int64_t top = 1;
  for (const TimelinePoint& p : t.points) {
    top = std::max({top, p.open, p.kernel_close_wait.value_or(0)});
  }
  double ystep = std::max(1.0, NiceStep(static_cast<double>(top), 4));
  double ymax = ystep * std::ceil(top / ystep);
  double xs = (kPlotW - kLeft - kRight) / static_cast<double>(span);
  double y0 = kPlotH - kBottom;
  double ys = (kPlotH - kTop - kBottom) / ymax;
  absl::StrAppendFormat(
      out,
      "<figure class=timeline data-pid=\"%d\"><figcaption>pid %d "
      "<span class=exe>%s</span></figcaption><svg viewBox=\"0 0 %d %d\" "
      "role=img aria-label=\"sockets of pid %d over time\">",
      t.pid, t.pid, Esc(t.exe), kPlotW, kPlotH, t.pid);
  // Grid and axes.
  for (double v = 0; v <= ymax + ystep / 2; v += ystep) {
    double y = y0 - v * ys;
    absl::StrAppendFormat(out,
                          "<line class=grid x1=%d x2=%d y1=%.1f y2=%.1f />"
                          "<text class=ylabel x=%d y=%.1f>%.0f</text>",
                          kLeft, kPlotW - kRight, y, y, kLeft - 6, y + 4, v);
  }
  double xstep = NiceStep(span / 1000.0, 6);
  for (double s = 0; s * 1000 <= span + 1; s += xstep) {
    double x = kLeft + s * 1000 * xs;
    absl::StrAppendFormat(out,
                          "<line class=tick x1=%.1f x2=%.1f y1=%.1f y2=%.1f />"
                          "<text class=xlabel x=%.1f y=%d>%gs</text>",
                          x, x, y0, y0 + 4, x, kPlotH - 10, s);
  }
  // Findings that began in this process; labels step down so that markers
  // close together stay readable.
  int drawn = 0;
  for (size_t i = 0; i < findings.size(); ++i) {
    const Finding& f = findings[i];
    if (!f.began_ms || f.began_pid != t.pid) continue;
    double x = kLeft + *f.began_ms * xs;
    absl::StrAppendFormat(
        out,
        "<a href=\"#f%d\"><line class=\"marker %s\" x1=%.1f x2=%.1f y1=%d "
        "y2=%.1f><title>[%d] %s began</title></line><text class=\"mlabel %s\" "
        "x=%.1f y=%d>[%d]</text></a>",
        i + 1, f.severity, x, x, kTop, y0, i + 1, f.kind, f.severity, x + 3,
        kTop + 8 + 12 * (drawn++ % 4), i + 1);
  }
  absl::StrAppendFormat(
      out, "<path class=open d=\"%s\" /><path class=cw d=\"%s\" />",
      StepPath(t.points, &TimelinePoint::open, kLeft, xs, y0, ys, t.end_ms),
      StepPath(t.points, &TimelinePoint::close_wait, kLeft, xs, y0, ys,
               t.end_ms));
  for (const TimelinePoint& p : t.points) {
    if (!p.kernel_close_wait) continue;
    absl::StrAppendFormat(
        out,
        "<circle class=kcw cx=%.1f cy=%.1f r=2.5><title>%s: kernel shows %d "
        "in CLOSE_WAIT</title></circle>",
        kLeft + p.t_ms * xs, y0 - *p.kernel_close_wait * ys, Ms(p.t_ms),
        *p.kernel_close_wait);
  }
  absl::StrAppend(out, "</svg></figure>");
}

constexpr absl::string_view kStyle = R"css(
:root{--err:#c62828;--warn:#ef6c00;--info:#1565c0;--line:#d9dde3;--muted:#5f6b7a}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2530;background:#f6f7f9}
header{background:#1d2530;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:18px;font-weight:600}
header .cmd{font-family:ui-monospace,monospace;color:#c9d3df;margin-top:2px;word-break:break-all}
.bar{display:flex;flex-wrap:wrap;gap:8px;margin-top:10px}
.stat{background:#2c3744;border-radius:6px;padding:4px 10px}
.stat b{font-size:15px}
.chip{display:inline-block;border-radius:10px;padding:1px 8px;color:#fff;font-size:12px;font-weight:600}
.chip.error{background:var(--err)}.chip.warning{background:var(--warn)}.chip.info{background:var(--info)}
main{padding:16px 24px;max-width:1200px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin-bottom:16px}
h2{font-size:16px;margin:0 0 10px}
.banner{background:#ffebee;border:1px solid var(--err);color:var(--err);font-weight:700;padding:10px 16px;border-radius:8px;margin-bottom:16px}
.warnings li{color:#8a4b00}
table{border-collapse:collapse;width:100%}
#culprits>thead th{cursor:pointer;user-select:none;text-align:left;border-bottom:2px solid var(--line);padding:6px 8px;white-space:nowrap}
#culprits>thead th[data-key]:after{content:" \2195";color:#aab}
#culprits>tbody>tr>td{padding:6px 8px;border-top:1px solid var(--line);vertical-align:top}
#culprits tr.row{cursor:pointer}
#culprits tr.row:hover{background:#f0f4fa}
#culprits>tbody>tr.detail>td{background:#fbfcfd;padding:10px 16px}
#culprits tbody.closed tr.detail{display:none}
#culprits tbody .toggle:before{content:"\25be"}
#culprits tbody.closed .toggle:before{content:"\25b8"}
td.count,td.num{text-align:right;font-variant-numeric:tabular-nums}
td.where{font-family:ui-monospace,monospace;font-size:12.5px}
.stacks{display:grid;gap:10px;margin:8px 0}
.stack{border:1px solid var(--line);border-radius:6px;overflow:hidden}
.stackname{background:#eef1f5;font-weight:600;padding:3px 8px}
.none{color:var(--muted);padding:4px 8px}
table.frames td{padding:2px 8px;border-top:1px solid #eef0f3;font-size:12.5px}
table.frames td.n{color:var(--muted);width:28px}
table.frames td.fn{width:24%}
table.frames td.loc{width:18%}
table.frames td.fn{font-family:ui-monospace,monospace;font-weight:600}
table.frames td.loc{font-family:ui-monospace,monospace;color:var(--muted);white-space:nowrap}
table.frames td.src code{white-space:pre-wrap;color:#1b5e20}
table.frames tr.lib td{opacity:.55}
table.frames tr.lib td.fn{font-weight:400}
.tag{font-size:11px;color:var(--muted);font-weight:400}
table.examples th,table.examples td{text-align:left;padding:3px 8px;border-top:1px solid #eef0f3;font-size:12.5px}
table.examples td{font-family:ui-monospace,monospace}
.fix{background:#e8f5e9;border-radius:6px;padding:6px 10px}
.message{font-weight:600;margin-top:0}
figure.timeline{margin:0 0 14px}
figcaption{font-weight:600;margin-bottom:2px}
figcaption .exe{font-weight:400;color:var(--muted);font-family:ui-monospace,monospace}
svg{width:100%;height:auto;background:#fff}
.grid{stroke:#edf0f3}.tick{stroke:#99a}
.ylabel{font-size:11px;fill:var(--muted);text-anchor:end}
.xlabel{font-size:11px;fill:var(--muted);text-anchor:middle}
path.open{fill:none;stroke:#1565c0;stroke-width:2}
path.cw{fill:none;stroke:#ef6c00;stroke-width:2}
circle.kcw{fill:#c62828}
line.marker{stroke-width:1.5;stroke-dasharray:4 3}
line.marker.error{stroke:var(--err)}line.marker.warning{stroke:var(--warn)}line.marker.info{stroke:var(--info)}
.mlabel{font-size:11px;font-weight:700}.mlabel.error{fill:var(--err)}.mlabel.warning{fill:var(--warn)}.mlabel.info{fill:var(--info)}
.legend{display:flex;gap:16px;color:var(--muted);font-size:12.5px;margin-bottom:8px}
.legend i{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:4px}
.docs h3{font-size:15px;margin-top:4px}.docs h4{font-size:14px}
.docs pre{background:#f3f5f8;padding:8px;border-radius:6px;overflow:auto}
.docs details{border-top:1px solid var(--line);padding:6px 0}
.docs summary{cursor:pointer;font-weight:600}
)css";

constexpr absl::string_view kScript = R"js(
(function(){
  var table=document.getElementById('culprits');
  if(!table)return;
  table.addEventListener('click',function(ev){
    var row=ev.target.closest('tr.row');
    if(row&&!ev.target.closest('a'))row.parentNode.classList.toggle('closed');
  });
  var dir={};
  table.querySelectorAll('th[data-key]').forEach(function(th){
    th.addEventListener('click',function(){
      var key=th.dataset.key, num=th.dataset.num==='1';
      dir[key]=-(dir[key]||(num?1:-1));
      var bodies=Array.prototype.slice.call(table.tBodies);
      bodies.sort(function(a,b){
        var x=a.dataset[key], y=b.dataset[key];
        if(num){x=+x;y=+y;}
        return (x<y?-1:x>y?1:0)*dir[key];
      });
      bodies.forEach(function(b){table.appendChild(b);});
    });
  });
})();
)js";

}  // namespace

std::string RenderHtml(const Report& r) {
  SourceLines sources;
  std::string out;
  std::string title = "closeaudit report";
  std::string command;
  if (!r.process_list.empty()) {
    const ProcessSummary& first = r.process_list.front();
    command = first.argv.empty() ? first.exe : absl::StrJoin(first.argv, " ");
    title = absl::StrCat("closeaudit: ",
                         first.exe.substr(first.exe.rfind('/') + 1));
  }
  int by_severity[4] = {0, 0, 0, 0};
  for (const Finding& f : r.findings) ++by_severity[SeverityRank(f.severity)];

  absl::StrAppend(&out, "<!DOCTYPE html>\n<html lang=en><head><meta "
                  "charset=utf-8><meta name=viewport "
                  "content=\"width=device-width,initial-scale=1\"><title>",
                  Esc(title), "</title><style>", kStyle, "</style></head><body>");
  absl::StrAppend(&out, "<header><h1>", Esc(title), "</h1>");
  if (!command.empty()) {
    absl::StrAppend(&out, "<div class=cmd>$ ", Esc(command), "</div>");
  }
  absl::StrAppend(&out, "<div class=bar id=summary>");
  auto stat = [&](std::string_view label, std::string value) {
    absl::StrAppend(&out, "<span class=stat>", Esc(label), " <b>", value,
                    "</b></span>");
  };
  stat("findings", absl::StrCat(r.findings.size()));
  for (auto [rank, name] : {std::pair{3, "error"}, std::pair{2, "warning"},
                            std::pair{1, "info"}}) {
    if (by_severity[rank] == 0) continue;
    absl::StrAppend(&out, "<span class=stat><span class=\"chip ", name, "\">",
                    by_severity[rank], " ", name,
                    by_severity[rank] == 1 ? "" : "s", "</span></span>");
  }
  stat("processes", absl::StrCat(r.processes));
  stat("sockets tracked", absl::StrCat(r.sockets_tracked));
  stat("events", absl::StrCat(r.events));
  stat("dropped", absl::StrCat(r.events_dropped));
  stat("duration", Ms(static_cast<int64_t>(r.duration_s * 1000)));
  stat("grace", Ms(static_cast<int64_t>(r.grace_ms)));
  if (!r.host.empty()) stat("host", Esc(r.host));
  if (!r.closeaudit_version.empty()) {
    stat("closeaudit", Esc(r.closeaudit_version));
  }
  if (!r.library_versions.empty()) {
    stat("library", Esc(absl::StrJoin(r.library_versions, ", ")));
  }
  absl::StrAppend(&out, "</div></header><main>");

  if (!r.audited) {
    absl::StrAppend(&out,
                    "<div class=banner>NOTHING WAS AUDITED: this report cannot "
                    "show problems (see the warnings).</div>");
  }
  if (!r.warnings.empty()) {
    absl::StrAppend(&out, "<section><h2>Warnings</h2><ul class=warnings>");
    for (const std::string& w : r.warnings) {
      absl::StrAppend(&out, "<li>", Esc(w), "</li>");
    }
    absl::StrAppend(&out, "</ul></section>");
  }

  AppendObservations(&out, r);

  absl::StrAppend(&out, "<section><h2>Culprits</h2>");
  if (r.findings.empty()) {
    absl::StrAppendFormat(&out,
                          "<p id=clean>No socket problems found (grace period "
                          "%s).</p>",
                          Ms(static_cast<int64_t>(r.grace_ms)));
  } else {
    absl::StrAppend(
        &out,
        "<table id=culprits><thead><tr><th data-key=idx data-num=1>#</th>"
        "<th data-key=sev data-num=1>severity</th><th data-key=kind>kind</th>"
        "<th data-key=count data-num=1>count</th><th data-key=where>where</th>"
        "<th data-key=kernel>kernel</th><th>what happened</th></tr></thead>");
    for (size_t i = 0; i < r.findings.size(); ++i) {
      const Finding& f = r.findings[i];
      std::string where = Where(f);
      absl::StrAppendFormat(
          &out,
          "<tbody id=f%d class=closed data-idx=%d data-sev=%d data-kind=\"%s\" "
          "data-count=%d data-where=\"%s\" data-kernel=%s>"
          "<tr class=row><td><span class=toggle></span> %d</td><td><span "
          "class=\"chip %s\">%s</span></td><td>%s</td><td class=count>%d</td>"
          "<td class=where>%s</td><td>%s</td><td>%s</td></tr>"
          "<tr class=detail><td colspan=7>",
          i + 1, i + 1, SeverityRank(f.severity), Esc(f.kind), f.count,
          Esc(where), f.confirmed_by_kernel ? "yes" : "no", i + 1,
          Esc(f.severity), Esc(f.severity), Esc(f.kind), f.count, Esc(where),
          f.confirmed_by_kernel ? "confirmed" : "", Esc(f.message));
      AppendDetail(&out, f, &sources);
      absl::StrAppend(&out, "</td></tr></tbody>");
    }
    absl::StrAppend(&out, "</table>");
  }
  absl::StrAppend(&out, "</section>");

  if (!r.timelines.empty()) {
    absl::StrAppend(
        &out,
        "<section><h2>Timeline</h2><div class=legend><span><i "
        "style=\"background:#1565c0\"></i>open sockets</span><span><i "
        "style=\"background:#ef6c00\"></i>CLOSE_WAIT (EOF seen, not "
        "closed)</span><span><i style=\"background:#c62828;height:6px;"
        "width:6px;border-radius:3px\"></i>CLOSE_WAIT, kernel sample</span>"
        "<span>[n] finding n began</span></div>");
    int64_t run_ms = static_cast<int64_t>(r.duration_s * 1000);
    for (const ProcessTimeline& t : r.timelines) {
      AppendTimeline(&out, t, run_ms, r.findings);
    }
    if (r.timelines_omitted > 0) {
      absl::StrAppend(&out, "<p class=none>", r.timelines_omitted,
                      " more processes with sockets are not drawn (the ones "
                      "shown are where findings began, then the busiest).</p>");
    }
    absl::StrAppend(&out, "</section>");
  }

  std::vector<std::string> kinds;
  for (const Finding& f : r.findings) {
    if (std::find(kinds.begin(), kinds.end(), f.kind) == kinds.end()) {
      kinds.push_back(f.kind);
    }
  }
  absl::StrAppend(&out, "<section class=docs><h2>About these findings</h2>");
  for (const FindingDoc& doc : kFindingDocs) {
    std::string kind = doc.kind;
    bool present =
        std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
    absl::StrAppend(&out, "<details id=\"doc-", kind, "\"",
                    present ? " open" : "", "><summary>", kind,
                    present ? "" : " (not in this report)", "</summary>", doc.html,
                    "</details>");
  }
  absl::StrAppend(&out, "</section></main><script>", kScript,
                  "</script></body></html>\n");
  return out;
}

std::string RenderFolded(const Report& r) {
  // Identical lines (the same kind, stack name and frames) add up.
  std::map<std::string, int64_t> lines;
  for (const Finding& f : r.findings) {
    for (const auto& [name, frames] : f.stacks) {
      if (frames.empty()) continue;
      std::string line = absl::StrCat(f.kind, ";", name);
      for (auto it = frames.rbegin(); it != frames.rend(); ++it) {
        if (IsStartupFrame(*it)) continue;
        std::string frame = FrameText(*it);
        // ';' separates frames and the last ' ' the count: keep both out.
        std::replace(frame.begin(), frame.end(), ';', ':');
        std::replace(frame.begin(), frame.end(), '\n', ' ');
        absl::StrAppend(&line, ";", frame);
      }
      lines[line] += f.count;
    }
  }
  std::string out;
  for (const auto& [line, count] : lines) {
    absl::StrAppend(&out, line, " ", count, "\n");
  }
  return out;
}

}  // namespace closeaudit
