"""Presentation: figures (:mod:`.plots`), reports (:mod:`.report`), the walkthroughs of
backpropagation (:mod:`.explain`) and the tour (:mod:`.tour`). Everything here draws or
writes numbers that tested functions of the other wings computed."""
