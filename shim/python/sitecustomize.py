"""closeaudit's Python-side helper: names the asyncio handler of each
connection.

`closeaudit run` puts this directory first on PYTHONPATH. Python imports
this module at start-up (the `site` module's sitecustomize hook); it first
runs the sitecustomize the program would have had without closeaudit (the
next one on sys.path), then arranges that when asyncio.selector_events is
imported, the loop's transport factory tells libcloseaudit.so, through
closeaudit_python_handler(), which function handles each connection's
events: start_server's client_connected_cb, or the Protocol class's
methods. In asyncio the EOF is read by the loop, not by that function;
the report names it as the owner of the connection.

Nothing else changes: no module is imported until the program imports
asyncio itself (ctypes then, once), the wrapped factory passes every
argument through and returns what the original returns, and any error in
the helper is swallowed. Without the library in the process (the variable
leaked into a child run without it) the helper does nothing.
"""


def _closeaudit_chain():
    # The program's own sitecustomize, if any, as if this one did not exist.
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _closeaudit_install():
    import sys

    target = "asyncio.selector_events"

    class _Finder:
        """Patches asyncio.selector_events once it has been executed."""

        def find_spec(self, name, path=None, target_module=None):
            if name != target:
                return None
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
            import importlib.util
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            loader = spec.loader
            exec_module = loader.exec_module

            def patched_exec(module):
                exec_module(module)
                try:
                    _closeaudit_patch(module)
                except Exception:
                    pass

            class _Loader:
                def __getattr__(self, attr):
                    return getattr(loader, attr)

                def create_module(self, spec):
                    return loader.create_module(spec)

                def exec_module(self, module):
                    patched_exec(module)

            spec.loader = _Loader()
            return spec

    if target in sys.modules:
        _closeaudit_patch(sys.modules[target])
    else:
        sys.meta_path.insert(0, _Finder())


def _closeaudit_patch(selector_events):
    import ctypes
    import functools

    try:
        note = ctypes.CDLL(None).closeaudit_python_handler
    except (OSError, AttributeError):
        return  # not under closeaudit
    note.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                     ctypes.c_int, ctypes.c_uint]
    note.restype = None
    streams_flag = 1 << 9  # wire::kHandlerPyStreams

    def definition(fn):
        while isinstance(fn, functools.partial):
            fn = fn.func
        fn = getattr(fn, "__func__", fn)
        code = getattr(fn, "__code__", None)
        if code is None:
            return None
        name = getattr(fn, "__qualname__", None) or code.co_name
        return name, code.co_filename, code.co_firstlineno

    def handler_of(protocol):
        cb = getattr(protocol, "_client_connected_cb", None)
        if cb is not None:
            return definition(cb), streams_flag
        cls = type(protocol)
        for method in ("eof_received", "data_received", "connection_made"):
            fn = getattr(cls, method, None)
            if fn is None:
                continue
            found = definition(fn)
            # Only a method the program wrote: asyncio's own are no owner.
            if found and "/asyncio/" not in found[1].replace("\\", "/"):
                return found, 0
        return None, 0

    loop_class = selector_events.BaseSelectorEventLoop
    original = loop_class._make_socket_transport

    @functools.wraps(original)
    def _make_socket_transport(self, sock, protocol, *args, **kwargs):
        try:
            found, flags = handler_of(protocol)
            if found:
                name, file, line = found
                note(sock.fileno(), name.encode("utf-8", "replace"),
                     file.encode("utf-8", "replace"), int(line), flags)
        except Exception:
            pass
        return original(self, sock, protocol, *args, **kwargs)

    loop_class._make_socket_transport = _make_socket_transport


try:
    _closeaudit_chain()
finally:
    try:
        _closeaudit_install()
    except Exception:
        pass
