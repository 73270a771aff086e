/* E2E: a server whose connections are handled by a plugin it loads with
 * dlopen() after it has started (the leak is the plugin's: leak_server.c, built as
 * libleak_plugin.so).
 *
 * Usage: plugin_host PORT_FILE PLUGIN
 * Listens first, so that the audit of this image has started (and sent its
 * module list) before the plugin is loaded; then loads PLUGIN and hands the
 * listening socket to its plugin_serve(). Runs until killed.
 */
#include <dlfcn.h>

#include "common.h"

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s PORT_FILE PLUGIN\n", argc > 0 ? argv[0] : "");
    return 2;
  }
  int listen_fd = listen_on_loopback(argv[1]);
  void *plugin = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
  if (plugin == NULL) {
    fprintf(stderr, "plugin_host: %s\n", dlerror());
    return 1;
  }
  void (*serve)(int) = (void (*)(int))dlsym(plugin, "plugin_serve");
  if (serve == NULL) {
    fprintf(stderr, "plugin_host: %s\n", dlerror());
    return 1;
  }
  serve(listen_fd);
  return 0;
}
