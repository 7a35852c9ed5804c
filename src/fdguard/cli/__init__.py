"""The `fdguard` command: thin click commands that call one facade each and render.

`main.py` holds the group and the one place where exceptions become exit
statuses; each `*_cmd.py` module is one command.
"""
