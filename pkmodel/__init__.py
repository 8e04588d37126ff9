"""pkmodel: PoseKit's model toolkit (data, training, evaluation, export, 3D lifting).

Importing pkmodel changes nothing outside it; the command line sets its process defaults
(pkmodel.common.runtime.set_process_defaults) before any command runs.
"""

__version__ = "0.1.0"
