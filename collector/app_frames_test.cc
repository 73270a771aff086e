#include "collector/app_frames.h"

#include "gtest/gtest.h"

namespace closeaudit {
namespace {

Frame F(std::string function, std::string file, std::string module) {
  Frame f;
  f.function = std::move(function);
  f.file = std::move(file);
  f.module = std::move(module);
  return f;
}

TEST(InApp, SystemLibrariesHeadersAndRuntimesAreNot) {
  AppRules none;
  EXPECT_TRUE(InApp(F("handle", "/src/srv/server.c", "/src/srv/server"), none));
  EXPECT_TRUE(InApp(F("", "", "/opt/app/bin/server"), none));  // stripped
  EXPECT_FALSE(InApp(F("read", "", "/lib/x86_64-linux-gnu/libc.so.6"), none));
  EXPECT_FALSE(InApp(F("evbuffer_read", "buffer.c",
                       "/usr/lib/x86_64-linux-gnu/libevent-2.1.so.7"), none));
  // asio's code instantiated into the program is still asio's.
  EXPECT_FALSE(InApp(F("boost::asio::detail::socket_ops::recv1(int)",
                       "/usr/include/boost/asio/detail/impl/socket_ops.ipp",
                       "/src/srv/server"), none));
  EXPECT_FALSE(InApp(F("void std::__invoke_impl<void>(int)", "",
                       "/src/srv/server"), none));
  EXPECT_FALSE(InApp(F("_PyEval_EvalFrameDefault", "",
                       "/root/.pyenv/versions/3.11.9/bin/python3.11"), none));
  EXPECT_FALSE(InApp(F("PyObject_Vectorcall", "",
                       "/root/.pyenv/versions/3.12.4/lib/libpython3.12.so.1.0"),
                     none));
  EXPECT_FALSE(InApp(F("", "", "/usr/bin/node"), none));
  EXPECT_TRUE(InApp(F("main", "/src/nodeapp/main.c", "/src/nodeapp/nodeapp"), none));
  EXPECT_FALSE(InApp(F("__vdso_clock_gettime", "", "linux-vdso.so.1"), none));
  // The start-up code linked into the program is the C library's.
  EXPECT_FALSE(InApp(F("_start", "", "/src/srv/server"), none));
  // An address in no module: unknown code is nobody's; a JIT's named
  // frame is the program's.
  EXPECT_FALSE(InApp(F("", "", ""), none));
  EXPECT_TRUE(InApp(F("LazyCompile:*onData /srv/app.js:10", "", ""), none));
  // ...unless the name says it is the runtime's own code.
  EXPECT_FALSE(InApp(F("py::read:/usr/lib/python3.11/asyncio/streams.py", "", ""),
                     none));
  EXPECT_FALSE(InApp(F("LazyCompile:~onStreamRead node:internal/stream_base_commons:163",
                       "", ""),
                     none));
}

Frame Py(std::string function, std::string file) {
  Frame f = F(std::move(function), std::move(file), "");
  f.language = "python";
  return f;
}

TEST(InApp, PythonFilesOfTheProgramAreItsOwnTheLibrariesAreNot) {
  AppRules none;
  EXPECT_TRUE(InApp(Py("handle", "/srv/app/server.py"), none));
  EXPECT_TRUE(InApp(Py("<module>", "server.py"), none));  // a relative path
  EXPECT_FALSE(InApp(Py("socket.accept", "/usr/lib/python3.11/socket.py"), none));
  EXPECT_FALSE(InApp(Py("serve_forever",
                        "/root/.pyenv/versions/3.12.1/lib/python3.12/"
                        "socketserver.py"), none));
  EXPECT_FALSE(InApp(Py("Session.send", "/srv/venv/lib/python3.11/"
                        "site-packages/requests/sessions.py"), none));
  EXPECT_FALSE(InApp(Py("urlopen", "/usr/lib/python3/dist-packages/urllib3/"
                        "connectionpool.py"), none));
  EXPECT_FALSE(InApp(Py("_find_and_load", "<frozen importlib._bootstrap>"), none));
  // The interpreter's extension modules, wherever it is installed.
  EXPECT_FALSE(InApp(F("sock_recv", "/tmp/build/Modules/socketmodule.c",
                       "/root/.pyenv/versions/3.12.1/lib/python3.12/lib-dynload/"
                       "_socket.cpython-312-x86_64-linux-gnu.so"), none));
  // --app-path claims a package of the program's own in site-packages.
  auto rules = ParseAppRules({"/srv/venv/lib/python3.11/site-packages/mine"}, {});
  ASSERT_TRUE(rules.ok());
  EXPECT_TRUE(InApp(Py("Handler.handle", "/srv/venv/lib/python3.11/"
                       "site-packages/mine/handler.py"), *rules));
  auto not_app = ParseAppRules({}, {"/srv/app/vendor/"});
  ASSERT_TRUE(not_app.ok());
  EXPECT_FALSE(InApp(Py("f", "/srv/app/vendor/lib.py"), *not_app));
}

TEST(LibraryName, PythonPackagesAndTheStandardLibrary) {
  EXPECT_EQ(LibraryName(Py("Session.send", "/srv/venv/lib/python3.11/"
                           "site-packages/requests/sessions.py")), "requests");
  EXPECT_EQ(LibraryName(Py("f", "/srv/venv/lib/python3.11/site-packages/six.py")),
            "six");
  EXPECT_EQ(LibraryName(Py("socket.accept", "/usr/lib/python3.11/socket.py")),
            "the Python standard library");
}

TEST(InApp, AppPathsWinAndNotAppExcludes) {
  AppRules rules;
  rules.app_paths = {"/usr/lib/myapp"};
  rules.not_app = {"vendor/", "mylib_"};
  EXPECT_TRUE(InApp(F("", "", "/usr/lib/myapp/plugin.so"), rules));
  EXPECT_FALSE(InApp(F("", "", "/usr/lib/myapp2/plugin.so"), rules));
  EXPECT_FALSE(InApp(F("parse", "/src/srv/vendor/http.c", "/src/srv/server"), rules));
  EXPECT_FALSE(InApp(F("mylib_read", "/src/srv/lib.c", "/src/srv/server"), rules));
  // An app path claims a frame a pattern would exclude.
  rules.app_paths.push_back("/src/srv/vendor");
  EXPECT_TRUE(InApp(F("parse", "/src/srv/vendor/http.c", "/src/srv/server"), rules));
}

TEST(ShortFunction, DropsParametersTemplatesAndReturnTypes) {
  EXPECT_EQ(ShortFunction("handle"), "handle");
  EXPECT_EQ(ShortFunction("handle(int)"), "handle");
  EXPECT_EQ(ShortFunction("void boost::asio::detail::reactive_socket_recv_op<"
                          "boost::asio::mutable_buffers_1, std::function<void "
                          "(int)> >::do_complete(void*, int)"),
            "boost::asio::detail::reactive_socket_recv_op::do_complete");
  EXPECT_EQ(ShortFunction("Session::do_read()::{lambda(boost::system::error_"
                          "code, unsigned long)#1}::operator()(boost::system::"
                          "error_code, unsigned long) const"),
            "Session::do_read()::{lambda}::operator()");
  EXPECT_EQ(ShortFunction("(anonymous namespace)::Reader::Run()"),
            "Reader::Run");
  EXPECT_EQ(ShortFunction("std::ostream::operator<<(int)"),
            "std::ostream::operator<<");
}

TEST(LibraryName, ByHeaderDirectoryOrModule) {
  EXPECT_EQ(LibraryName(F("f", "/usr/include/boost/asio/detail/reactor.hpp", "/x")),
            "boost/asio");
  EXPECT_EQ(LibraryName(F("f", "/usr/include/c++/12/bits/std_function.h", "/x")),
            "libstdc++");
  EXPECT_EQ(LibraryName(F("f", "", "/usr/lib/x86_64-linux-gnu/libuv.so.1")),
            "libuv.so.1");
  EXPECT_EQ(LibraryName(F("", "", "")), "");
}

TEST(ParseAppRules, MakesPathsAbsoluteAndRejectsEmpty) {
  absl::StatusOr<AppRules> r = ParseAppRules({"/srv/app/", "rel"}, {"x"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->app_paths[0], "/srv/app");
  EXPECT_EQ(r->app_paths[1].front(), '/');
  EXPECT_TRUE(r->app_paths[1].ends_with("/rel"));
  EXPECT_FALSE(ParseAppRules({""}, {}).ok());
  EXPECT_FALSE(ParseAppRules({}, {""}).ok());
}


Frame Js(std::string_view perf_name) {
  Frame f;
  EXPECT_TRUE(ParseJsPerfName(perf_name, &f)) << perf_name;
  return f;
}

TEST(ParseJsPerfName, ReadsWhatV8Writes) {
  Frame f = Js("JS:~internalConnect node:net:1038:25");
  EXPECT_EQ(f.language, "js");
  EXPECT_EQ(f.function, "internalConnect");
  EXPECT_EQ(f.file, "node:net");
  EXPECT_EQ(f.line, 1038);
  // Anonymous, optimized, a getter's name with a space, an ES module.
  f = Js("JS:*  /srv/app/server.js:12:40");
  EXPECT_EQ(f.function, "(anonymous)");
  EXPECT_EQ(f.file, "/srv/app/server.js");
  EXPECT_EQ(f.line, 12);
  f = Js("JS:^get port /srv/app/cfg.js:3:7");
  EXPECT_EQ(f.function, "get port");
  f = Js("JS:+handle file:///srv/app/main.mjs:20:1");
  EXPECT_EQ(f.file, "/srv/app/main.mjs");
  // Before V8 9.
  f = Js("LazyCompile:~onData /srv/app.js:10:17");
  EXPECT_EQ(f.function, "onData");
  EXPECT_EQ(f.line, 10);
  // Anything else is not JavaScript: left alone.
  for (std::string_view other :
       {"py::handle:/srv/app.py", "JS:~f /srv/app.js", "JS:~f /srv/app.js:x:1",
        "Builtin:ArgumentsAdaptorTrampoline", "JS:", "JS:~f :1:99999999999",
        "Stub:CEntry"}) {
    Frame g;
    g.function = "kept";
    EXPECT_FALSE(ParseJsPerfName(other, &g)) << other;
    EXPECT_EQ(g.function, "kept");
    EXPECT_EQ(g.language, "");
  }
}

TEST(InApp, JavaScriptOfTheProgramIsItsOwnNodeAndNpmPackagesAreNot) {
  AppRules none;
  EXPECT_TRUE(InApp(Js("JS:~onEnd /srv/app/server.js:9:3"), none));
  EXPECT_FALSE(InApp(Js("JS:~connect node:net:234:17"), none));
  EXPECT_FALSE(InApp(Js("JS:~emit node:internal/process/task_queues:81:1"), none));
  Frame express = Js("JS:~handle /srv/app/node_modules/express/lib/router/layer.js:86:3");
  EXPECT_FALSE(InApp(express, none));
  EXPECT_EQ(LibraryName(express), "express");
  EXPECT_EQ(LibraryName(Js("JS:~f /srv/node_modules/@scope/pkg/index.js:1:1")),
            "@scope/pkg");
  EXPECT_EQ(LibraryName(Js("JS:~connect node:net:234:17")), "Node.js");
  EXPECT_EQ(SourceName(Js("JS:~emit node:internal/process/task_queues:81:1")),
            "node:internal/process/task_queues");
  EXPECT_EQ(SourceName(Js("JS:~onEnd /srv/app/server.js:9:3")), "server.js");
  auto rules = ParseAppRules({"/srv/app/node_modules/mine"}, {});
  ASSERT_TRUE(rules.ok());
  EXPECT_TRUE(InApp(Js("JS:~f /srv/app/node_modules/mine/index.js:1:1"), *rules));
}

}  // namespace
TEST(InApp, JavaClassesOfTheProgramAreItsOwnTheJdksAreNot) {
  auto J = [](std::string function, std::string file) {
    Frame f = F(std::move(function), std::move(file), "");
    f.language = "java";
    return f;
  };
  AppRules none;
  EXPECT_TRUE(InApp(J("ThreadServer.readSome", "ThreadServer.java"), none));
  EXPECT_TRUE(InApp(J("com.example.Server.handle", "com/example/Server.java"), none));
  EXPECT_TRUE(InApp(J("org.apache.http.Client.execute", "org/apache/http/Client.java"),
                    none));  // a library, unless the program's packages are named
  for (const char* jdk : {"java.net.Socket.close", "javax.net.ssl.SSLSocket.close",
                          "jdk.internal.net.http.HttpClientImpl.send",
                          "sun.nio.ch.Net.shutdown",
                          "com.sun.tools.javac.launcher.Main.main"}) {
    EXPECT_FALSE(InApp(J(jdk, ""), none)) << jdk;
  }
  EXPECT_EQ(LibraryName(J("sun.nio.ch.Net.shutdown", "sun/nio/ch/Net.java")), "the JDK");

  absl::StatusOr<AppRules> rules = ParseAppRules({"java:com.example"}, {});
  ASSERT_TRUE(rules.ok()) << rules.status();
  EXPECT_TRUE(InApp(J("com.example.Server.handle", "com/example/Server.java"), *rules));
  EXPECT_TRUE(InApp(J("com.example.web.Api.get", "com/example/web/Api.java"), *rules));
  EXPECT_FALSE(InApp(J("com.examples.Other.run", "com/examples/Other.java"), *rules));
  EXPECT_FALSE(InApp(J("org.apache.http.Client.execute", ""), *rules));
  EXPECT_FALSE(InApp(J("java.net.Socket.close", ""), *rules));
  // A native frame is judged as before.
  EXPECT_TRUE(InApp(F("handle", "/src/srv/server.c", "/src/srv/server"), *rules));

  for (const char* bad : {"java:", "java:.com", "java:com.", "java:com/example",
                          "java:com example"}) {
    EXPECT_FALSE(ParseAppRules({bad}, {}).ok()) << bad;
  }
}

}  // namespace closeaudit
