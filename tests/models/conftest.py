"""Fixtures of the network tests (models/: backbone, FPN, GLNet, losses, convert, inference).

None of their own yet: the reference layout and its oracle are functions in
reference_layout.py, and each module builds its tiny networks itself.
"""
