FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
RUN useradd --create-home --uid 1000 app

# Dependencies first, so that code changes do not reinstall torch.
# --retries 0: where the PyTorch CPU index is unreachable (offline mirrors) pip falls back at once.
COPY requirements.txt .
RUN pip install --retries 0 -r requirements.txt

COPY --chown=app:app skin_model/ skin_model/
COPY --chown=app:app app_pages/ app_pages/
COPY --chown=app:app assets/ assets/
COPY --chown=app:app .streamlit/ .streamlit/
COPY --chown=app:app streamlit_app.py navigation.py ui.py ./

USER app
EXPOSE 8501
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status != 200)"
CMD ["streamlit", "run", "streamlit_app.py", "--server.address=0.0.0.0", "--server.port=8501"]
