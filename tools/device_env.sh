# Sourced by the GPU-machine scripts (tools/gpu_session.sh, tools/gpu_notebooks.sh) from the
# repository root, with PY set: points arnb at the carried data and puts the carried wheels that
# the machine's Python lacks on PYTHONPATH (tools/prepare_device_data.sh builds .devdata/).
if [ -z "${ARNB_DATA_DIR:-}" ] && [ -d .devdata ]; then export ARNB_DATA_DIR=$PWD/.devdata; fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ -d .devdata/wheels ]; then
  # one folder per Python version: a compiled wheel fits only the version it was built for
  device_site=/tmp/arnb-site-$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  export PYTHONPATH=$PYTHONPATH:$device_site
  "$PY" tools/device_site.py .devdata/wheels "$device_site" || echo "tools/device_site.py failed"
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
