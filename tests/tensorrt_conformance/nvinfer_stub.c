/*
 * Stand-ins for the TensorRT libraries, so the real Python bindings import without a GPU.
 *
 * tensorrt_bindings/tensorrt.so of the PyPI wheels (10.0.1, 10.8.0.43, 10.13.3.9, 11.4.0.106)
 * NEEDs libnvinfer.so.N, libnvonnxparser.so.N and libnvinfer_plugin.so.N (N = 10 or 11) and
 * takes only these C symbols from them (`nm -D --undefined-only tensorrt.so`): everything
 * else it uses is C++ vtable calls on the objects these factories return. Each factory
 * returns NULL, so any attempt to create a library-backed object fails the way the bindings
 * fail without a driver: `trt.Builder(logger)` raises TypeError ("factory function returned
 * nullptr"). Enums, Dims, Logger and the calibrator base classes are pure Python bindings and
 * work. The same file is compiled three times per major with -Wl,-soname,libX.so.N.
 *
 * Prototypes follow NvInfer.h / NvInferRuntime.h / NvOnnxParser.h / NvInferPlugin.h.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *createInferBuilder_INTERNAL(void *logger, int32_t version) { return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int32_t version) { return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int32_t version) { return NULL; }
void *getPluginRegistry(void) { return NULL; }
void *getBuilderPluginRegistry(int32_t engine_capability) { return NULL; }

void *createNvOnnxParser_INTERNAL(void *network, void *logger, int32_t version) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int32_t version) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }

/* Neither the import nor deploylab calls this (trt.init_libnvinfer_plugins does). */
bool initLibNvInferPlugins(void *logger, char const *lib_namespace) { return true; }
