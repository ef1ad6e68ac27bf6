"""emogs.render"""
