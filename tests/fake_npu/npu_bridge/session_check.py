"""The adapter's checks of the NpuOptimizer parameter_map, for the fake (not a module of the real adapter).

The real adapter reads the custom optimizer's parameter_map when GE starts (tf_adapter/util/npu_attrs.cc)
and stops the process (LOG(FATAL)) or returns an error for a bad value. The fake cannot run there, so
fake util.set_iteration_per_loop and the tests call ``check_config`` on the session's config; each rule
names the adapter's lines. A rule from Ascend's documentation (not code) says so.
"""
import json
import os

from . import branch

# master npu_attrs.cc :1928-1937 (CheckValueAllowed). Development (:1019-1027) hands the string to GE
# unchecked; the fake applies master's list on both branches (at least as strict).
PRECISION_MODES = ("force_fp32", "allow_fp32_to_fp16", "force_fp16", "must_keep_origin_dtype",
                   "allow_mix_precision", "cube_fp16in_fp32out", "allow_mix_precision_fp16",
                   "allow_mix_precision_bf16", "allow_fp32_to_bf16")


class AdapterConfigError(ValueError):
    """What the adapter would refuse (FATAL or an error status) for this session config."""


def npu_parameters(config):
    """The NpuOptimizer parameter_map of a ConfigProto, or None."""
    for item in config.graph_options.rewrite_options.custom_optimizers:
        if item.name == "NpuOptimizer":
            return item.parameter_map
    return None


def _dump_step_ok(text):
    # npu_attrs.cc checkDumpStep: master :236-266, development :88-112 ('0|5|10-20', at most 100 sets)
    items = text.split("|")
    if len(items) > 100:
        return False
    for item in items:
        ends = item.split("-")
        if len(ends) > 2 or not all(end.isdigit() for end in ends):
            return False
        if len(ends) == 2 and int(ends[0]) >= int(ends[1]):
            return False
    return True


def check_config(config, iterations_per_loop=None):
    """AdapterConfigError for what the adapter refuses; returns the parameter_map."""
    params = npu_parameters(config)
    if params is None:
        raise AdapterConfigError("no NpuOptimizer custom optimizer in the session config")
    rewrite = config.graph_options.rewrite_options
    if rewrite.remapping != rewrite.OFF:
        # Ascend doc tfmigr1_tfadapi_0002 / npu_init.npu_config_proto: remapping must be OFF
        raise AdapterConfigError("remapping must be OFF")
    if "precision_mode" in params and params["precision_mode"].s.decode() not in PRECISION_MODES:
        raise AdapterConfigError("precision_mode %r is not allowed" % params["precision_mode"].s)
    loops = params["iterations_per_loop"].i if "iterations_per_loop" in params else 1
    if loops < 1:  # om_partition_subgraphs_pass.cc master :2130-2133 (FATAL)
        raise AdapterConfigError("iterations_per_loop should be int and must >= 1")
    if loops > 1 and not ("enable_data_pre_proc" in params and params["enable_data_pre_proc"].b):
        # Ascend doc tfmigr1_000048: the loop sinks only with the device-side GetNext (enable_data_pre_proc);
        # the adapter silently runs one step per sess.run, which the fake refuses to be stricter.
        raise AdapterConfigError("iterations_per_loop > 1 needs enable_data_pre_proc=True")
    if iterations_per_loop is not None and iterations_per_loop != loops:
        # set_iteration_per_loop doc (tfmigr1_tfadapi_0085): the value must match the session config's
        raise AdapterConfigError("set_iteration_per_loop(%d) but parameter_map iterations_per_loop is %d"
                                 % (iterations_per_loop, loops))
    dump = "enable_dump" in params and params["enable_dump"].b
    debug = "enable_dump_debug" in params and params["enable_dump_debug"].b
    if (dump or debug) and "dump_path" not in params:
        # master :1809-1822, development :929-940
        raise AdapterConfigError("if use dump function, dump_path must be set.")
    if (dump or debug) and not os.path.isdir(params["dump_path"].s.decode()):
        # CheckPath: master :286-299 (mmIsDir), development :136: "the path ... is not directory."
        raise AdapterConfigError("the path %s is not directory." % params["dump_path"].s.decode())
    if dump and "dump_step" in params and not _dump_step_ok(params["dump_step"].s.decode()):
        raise AdapterConfigError("dump_step %r is not like 0|5|10-20" % params["dump_step"].s)
    if dump and "dump_mode" in params and params["dump_mode"].s.decode() not in ("input", "output", "all"):
        raise AdapterConfigError("dump mode should be one of the list:[input, output, all]")  # :268-275
    if debug and "dump_debug_mode" in params and \
            params["dump_debug_mode"].s.decode() not in ("aicore_overflow", "atomic_overflow", "all"):
        raise AdapterConfigError("dump debug mode should be one of the list:[aicore_overflow, "
                                 "atomic_overflow, all]")  # :277-284
    profiling = "profiling_mode" in params and params["profiling_mode"].b
    if profiling:
        options = params["profiling_options"].s.decode() if "profiling_options" in params else ""
        if not options and branch() == "development":
            # development :977-985: FATAL "profiling_options must be set when use profiling"
            raise AdapterConfigError("profiling_options must be set when use profiling")
        if options:
            try:
                json.loads(options)
            except ValueError:
                # master's default (npu_attrs.cc :42-43) and GE take a JSON object
                raise AdapterConfigError("profiling_options is not JSON: %r" % options) from None
    return params
