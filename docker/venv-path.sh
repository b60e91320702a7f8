# The image's virtual environment first on PATH in login shells too. Ray's cluster launcher runs
# commands through `bash --login`, and /etc/profile resets PATH before sourcing this folder.
export VIRTUAL_ENV=/opt/venv
case ":${PATH}:" in
    *":${VIRTUAL_ENV}/bin:"*) ;;
    *) export PATH="${VIRTUAL_ENV}/bin:${PATH}" ;;
esac
