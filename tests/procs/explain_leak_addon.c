/* A Node.js native addon (N-API) that does what leaking native code does:
 * opens a socket outside any libuv handle and forgets it. leakSocket()
 * returns the fd so the test knows the ground truth. */
#include <node_api.h>
#include <sys/socket.h>
#include <netinet/in.h>

static napi_value leak_socket(napi_env env, napi_callback_info info) {
  napi_value out;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  (void)info;
  napi_create_int32(env, fd, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "leakSocket", NAPI_AUTO_LENGTH, leak_socket, NULL, &fn);
  napi_set_named_property(env, exports, "leakSocket", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
