/*
 * Link stubs for TensorRT's Python bindings (tensorrt-cu12-bindings), so the REAL bindings import
 * on a machine without TensorRT's libraries (no GPU, CI). The bindings' extension needs exactly
 * these nine C entry points from libnvinfer / libnvinfer_plugin / libnvonnxparser
 * (`nm -D --undefined-only tensorrt.so`); every factory returns NULL, so `trt.Builder(logger)`
 * raises a clean TypeError instead of doing anything. Compiled by tests/trt/conftest.py into
 * tests/trt/_stubs/build/ (git-ignored), once per TensorRT major version (the soname differs).
 * Argument lists are irrelevant to the C ABI here: every function ignores its arguments.
 */
#include <stddef.h>

void *createInferBuilder_INTERNAL(void) { return NULL; }
void *createInferRuntime_INTERNAL(void) { return NULL; }
void *createInferRefitter_INTERNAL(void) { return NULL; }
void *getPluginRegistry(void) { return NULL; }
void *getBuilderPluginRegistry(void) { return NULL; }
int initLibNvInferPlugins(void) { return 0; }
void *createNvOnnxParser_INTERNAL(void) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
