"""OpenAI's fine-tuning API over the local workflow (`ftagent serve --fine-tuning`).

A file uploaded over HTTP is stored as it came under a generated id (`store.py`); a job
checks it line by line and makes a workflow run of it (`validate.py`); one job at a time
drives its run in a worker process (`worker.py`, started and followed by `manager.py`),
its gates decided by the operator's policy; what the run did becomes the job's status and
events (`events.py`), shaped as OpenAI's objects (`shapes.py`); `routes.py` puts it on the
server and hot-loads each tuned adapter as an `ft:` model.
"""
