"""What a sweep leaves behind, without torch or Ray: tables, Pareto ranks, readers, figures, the HTML page."""
