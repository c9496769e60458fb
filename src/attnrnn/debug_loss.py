def run_study(out, progress=True):
    raise NotImplementedError
