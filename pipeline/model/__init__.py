"""The lowest layer: records (recording, segment, job, finding, report), media facts, Agora's file
names, policy, settings and the exception tree. Pure: no I/O, imports nothing else of recpipe's."""
