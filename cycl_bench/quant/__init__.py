"""Quantization: switchable precision on Brevitas, gradient quantization, schedules, costs.

The precision API (`set_precision`, `get_precision`, `precision`, `layer_precision`,
`model_size_bytes`) lives in `cycl_bench.quant.precision`; the fixed-point gradient quantizer in
`cycl_bench.quant.gradquant`.
"""
