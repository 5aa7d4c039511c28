# deta_tiny_sgd.py plus the test-only crash points of _crash_hooks.py (no-ops unless the test sets the variables):
# $PE_TEST_PAUSE_AT=N pauses after iteration N, $PE_TEST_STALL_ON=iter_N.pth stalls inside that checkpoint's write.
# Needs tests/distributed on PYTHONPATH.
_base_ = 'deta_tiny_sgd.py'
custom_imports = dict(imports=['pe_dense.mm', 'pe_dense.engine', 'pe_dense.heads.deta', '_crash_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='PreflightHook'), dict(type='RNGStateHook'), dict(type='_PauseHook')]
default_hooks = dict(checkpoint=dict(backend_args=dict(backend='pe_test_stalling_atomic')))
